"""Member messaging: what to say, to whom, on which channel, and when."""
