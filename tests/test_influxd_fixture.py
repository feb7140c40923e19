from tests.influxd import InfluxServer


def test_real_influxd_accepts_a_write_and_returns_it(influxd: InfluxServer) -> None:
    import httpx

    influxd.create_database("fixture")
    r = httpx.post(f"{influxd.url}/write", params={"db": "fixture"}, content=b"m,t=a v=1.5 1000")
    assert r.status_code == 204
    rows = influxd.rows("SELECT v FROM m", "fixture")
    assert rows == [{"time": 1000, "v": 1.5, "t": "a"}] or rows == [{"time": 1000, "v": 1.5}]
