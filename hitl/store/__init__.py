"""The ticket store: ORM tables, the Database resource, and the repository functions."""
