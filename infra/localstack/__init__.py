"""The local cloud: LocalStack without Docker (``localcloud/``, its installer and supervisor) and the Lambda
executor plugin that runs functions as local processes (``executor/``). See README.md here."""
