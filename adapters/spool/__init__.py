"""The outage spool: a durable file of changes the store did not take, and the forwarder that sends them on."""
