"""NATS JetStream backend for aclbus."""
