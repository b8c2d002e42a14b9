"""One module per command group of tmctl."""
