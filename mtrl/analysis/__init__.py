"""Analysis: statistics over finished runs and the reports, tables and figures built from them."""
