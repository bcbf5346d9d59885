"""The `vafa` command line and the settings it passes down."""
