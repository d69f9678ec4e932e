"""The mailbox (one Maildir per recipient) and the router that delivers it."""
