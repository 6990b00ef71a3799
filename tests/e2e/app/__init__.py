"""The application stack (template.yaml) deployed into the local cloud and driven over HTTP and SQS."""
