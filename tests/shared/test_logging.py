from shared.logging import mask_pii


def test_phone_numbers_and_emails_are_masked():
    masked = mask_pii("sent to 010-1234-5678 and 01098765432, copy kim.minji@example.co.kr")
    assert "1234" not in masked and "9876" not in masked and "kim.minji" not in masked
    assert "example.co.kr" in masked and "010-****-**78" in masked
