"""One router per resource: achievements, people's commands, systems' webhooks, reads."""
