"""``python3 -m infra.localstack.localcloud install|up|down|status|logs`` (from the repository root)."""

from infra.localstack.localcloud.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
