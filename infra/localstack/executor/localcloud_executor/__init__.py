"""A LocalStack Lambda runtime executor that runs execution environments as local processes (no Docker).

Inside LocalStack's venv: ``plugin`` (entry point), ``executor`` (one environment: start, invoke, stop),
``hooks`` (DynamoDB Local on 127.0.0.1). Outside it, stdlib only: ``init/`` (each environment's init
program), ``bootstrap`` (the runtime's first code, under the function's interpreter), ``proctree``
(process trees from /proc) and ``layout`` (where those programs are). This file imports nothing: the
stdlib-only modules are imported through it by the localcloud CLI and the tests.
"""
