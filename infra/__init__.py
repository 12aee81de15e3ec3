"""Everything about running the application: the local stack and extra templates."""
