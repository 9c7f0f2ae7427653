def test_authorize_default(api):
    r = api.post("/authorize", {"role": "parent", "action": "view", "area": "behaviour", "phase": "completed"})
    assert r.status_code == 200, r.json
    assert r.json["allowed"] is True
