"""A URL-signing hook for the tests (``stac.auth.sign_url: "signing:sign"``), standing in
for a provider's signer such as Planetary Computer's SAS tokens."""

SIGNATURE = "fw-test-sig-5b1e"  # a stand-in secret: must never appear in a log or a state


def sign(href: str) -> str:
    """``href`` with a signature in its query string, as a signed URL carries it."""
    return f"{href}{'&' if '?' in href else '?'}sig={SIGNATURE}"
