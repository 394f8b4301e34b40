"""What a run folder looks like to a person: console tables, the HTML report, compare and rescore."""
