"""Plans and limits, payment providers (Stripe, Payme, Payoneer), trial and subscription lifecycle, reminders."""
