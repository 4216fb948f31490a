"""Message transports: Slack, email (SMTP), signed webhooks, Telegram, and the drill outbox.

Every transport sends one ``Message`` to one address and returns the provider's id, or raises
``Permanent`` (try the recipient's next channel) or ``Transient`` (worth retrying). Each message
carries an idempotency key that the provider can see (Slack message metadata, the email's
Message-ID, the webhook's Idempotency-Key), so that a re-send after a crash can be recognised.
"""
