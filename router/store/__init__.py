"""The store: the database engine, SQLModel tables, and the decision log writer. All SQL lives here."""
