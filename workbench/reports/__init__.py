"""Tables, figures and HTML shared by the CLI, the regression report and the panel (no widgets)."""
