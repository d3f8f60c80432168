"""push-jobs: the operator CLI with knife-push's grammar."""
