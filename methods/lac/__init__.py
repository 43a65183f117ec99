"""LAC: learned adaptive visual-token caching (arXiv 2602.00686; no public code — our choices are documented)."""
