"""push-jobs-server-ctl: operate a pushd appliance (one module per command)."""
