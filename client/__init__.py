"""push-jobs-client: the node agent."""
