"""The `vafa` command line, one module per command group; `app` assembles them."""
