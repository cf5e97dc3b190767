"""The reputation guard: when a mailout's bounces or complaints say it must pause."""

from __future__ import annotations


def reputation_problem(sent: int, reputation: dict, settings) -> str | None:
    """Why the mailout must pause, or None.

    SES puts an account under review at a 5% bounce or 0.1% complaint rate
    and may pause it at 10% / 0.5%; stopping one mailout early protects every
    later one. Below guard_min_sent the rates say too little to act on.
    """
    if sent < settings.guard_min_sent:
        return None
    bounce_rate = reputation["bounces"] / sent
    complaint_rate = reputation["complaints"] / sent
    if bounce_rate > settings.max_bounce_rate:
        return (
            f"bounce rate {bounce_rate:.2%} ({reputation['bounces']} of {sent} sent)"
            f" is above MAX_BOUNCE_RATE {settings.max_bounce_rate:.2%}"
        )
    if complaint_rate > settings.max_complaint_rate:
        return (
            f"complaint rate {complaint_rate:.2%} ({reputation['complaints']} of {sent} sent)"
            f" is above MAX_COMPLAINT_RATE {settings.max_complaint_rate:.2%}"
        )
    return None
