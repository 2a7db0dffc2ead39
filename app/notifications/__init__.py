"""Notifications: one module per channel, and the dispatcher that writes deliveries."""
