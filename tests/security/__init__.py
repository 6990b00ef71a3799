"""Security checks that run offline: IAM least privilege, cfn-lint, secrets scan; pip-audit (network)."""
