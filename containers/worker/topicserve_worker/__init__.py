"""topicserve_worker: the bulk worker, a long-running process (the GPU image's entrypoint, ECS on AWS).

``worker`` drains the bulk queue with the batcher's rules; ``accelerator`` picks its encoder (fp16 on CUDA,
else the CPU INT8 one). It runs on the serving library (``topicserve``) but in a container, not in a Lambda
function, so it lives outside the layer: containers/build.py copies it into the image beside the library.
"""
