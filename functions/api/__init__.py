"""Lambda handler package (the template ships the folder; tests import it as a package)."""
