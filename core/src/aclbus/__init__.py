"""aclbus: Agent Communication Language messaging for distributed AI agents."""
