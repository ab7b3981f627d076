"""SQL: text-to-SQL over real databases with execution rewards."""
