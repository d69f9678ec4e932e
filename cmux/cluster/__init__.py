"""The cluster: agents on several hosts, mail and state over NATS JetStream
(docs/CLUSTER.md). Only imported when cmux.toml has a [cluster] section (or
`cmux node` runs): without one cmux is files only, no server, no nats-py."""
