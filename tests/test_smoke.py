from tests.support.db import add_mailout, add_subscribers, ledger, mailout_row


def test_webhook_sends_through_moto(client, conn, moto_ses):
    add_subscribers(conn, ["a@x.org", "b@x.org"])
    mailout_id = add_mailout(conn)
    response = client.post(
        "/send-mailout", json={"mailout_id": str(mailout_id), "auth_token": "test-shared-secret-0123456789", "wait": True}
    )
    assert response.status_code == 200, response.json
    assert response.json["sent"] == 2
    assert ledger(conn, mailout_id) == {"a@x.org": "sent", "b@x.org": "sent"}
    assert mailout_row(conn, mailout_id)["status"] == "sent"
    assert len(moto_ses.sent_messages) == 2
