"""Private helpers of aclbus: nothing here is public API."""
