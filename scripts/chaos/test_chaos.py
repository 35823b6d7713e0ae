"""Unit tests of the report's arithmetic: python3 -m unittest discover -s scripts/chaos"""
import json
import unittest

import analysis as an


def req(t, dur=0.01, ok=True, status=200, kind="read", src="goose-mix"):
    return an.Req(t=t, dur=dur, src=src, kind=kind, method="GET", name="GET /x", status=status, ok=ok)


def goose_line(elapsed, name="GET /{code}", method="Get", status=302, ok=True, rt=3, update=False, user=0):
    return json.dumps({"elapsed": elapsed, "raw": {"method": method, "url": "http://h/x"}, "name": name,
                       "response_time": rt, "response_time_fraction_us": 500, "status_code": status,
                       "success": ok, "update": update, "user": user, "error": "" if ok else "boom"})


class GooseLog(unittest.TestCase):
    def test_request_times_are_wall_clock_from_the_offset(self):
        [r] = an.parse_goose_log([goose_line(1500)], offset=1000.0, src="g")
        self.assertAlmostEqual(r.t, 1001.5)
        self.assertAlmostEqual(r.dur, 0.0035)

    def test_redirects_writes_and_reads_are_told_apart(self):
        lines = [goose_line(1, "GET /{code}"), goose_line(2, "GET /urls/{code}/redirect"),
                 goose_line(3, "GET /{code} (unknown)", status=404), goose_line(4, "POST /urls", "Post", 201),
                 goose_line(5, "GET /urls/{id}", status=200)]
        kinds = [r.kind for r in an.parse_goose_log(lines, 0, "g")]
        self.assertEqual(kinds, ["redirect", "redirect", "redirect", "write", "read"])

    def test_a_later_set_failure_update_marks_the_request_failed(self):
        lines = [goose_line(10, ok=True), goose_line(10, ok=False, update=True)]
        [r] = an.parse_goose_log(lines, 0, "g")
        self.assertFalse(r.ok)

    def test_two_requests_in_the_same_millisecond_stay_two_requests(self):
        lines = [goose_line(10, ok=False, status=503), goose_line(10, ok=True)]
        rs = an.parse_goose_log(lines, 0, "g")
        self.assertEqual([(r.status, r.ok) for r in rs], [(503, False), (302, True)])

    def test_an_update_in_a_later_chunk_amends_its_request(self):
        p = an.GooseLogParser(0, "g")
        [r] = p.feed([goose_line(10, user=3)])
        self.assertEqual(p.feed([goose_line(10, ok=False, update=True, user=3)]), [])
        self.assertFalse(r.ok)

    def test_a_cut_last_line_is_skipped(self):
        rs = an.parse_goose_log([goose_line(1), goose_line(2)[:20]], 0, "g")
        self.assertEqual(len(rs), 1)


class Phases(unittest.TestCase):
    def test_counts_and_latency_come_from_requests_started_in_the_window(self):
        rs = [req(9.9, dur=5), req(10, dur=0.1), req(11, dur=0.2, ok=False, status=503), req(20, dur=9)]
        ps = an.phase_stats(rs, 10, 20, 30)
        self.assertEqual(ps.requests, 2)
        self.assertEqual(ps.failed_by_status, {"503": 1})
        self.assertEqual(ps.max_ms, 200)

    def test_recovery_is_the_end_of_the_last_failure_until_the_next_phase(self):
        rs = [req(11, dur=1, ok=False, status=503), req(25, dur=0.5, ok=False, status=0), req(40, ok=False)]
        ps = an.phase_stats(rs, 10, 20, 30)
        self.assertAlmostEqual(ps.recovery_s, 15.5)

    def test_recovery_is_zero_when_nothing_failed(self):
        self.assertEqual(an.phase_stats([req(11)], 10, 20, 30).recovery_s, 0.0)

    def test_p99_is_nearest_rank(self):
        self.assertEqual(an.nearest_rank(list(range(1, 101)), 99), 99)
        self.assertEqual(an.nearest_rank([5.0], 99), 5.0)


class Targets(unittest.TestCase):
    def test_a_503_write_inside_the_unavailable_window_plus_2s_is_allowed(self):
        w = req(10, dur=2.5, ok=False, status=503, kind="write")
        self.assertEqual(an.writes_only_503_while_unavailable([w], [(5, 11)]), [])

    def test_a_write_failing_with_another_status_breaks_the_target(self):
        w = req(6, ok=False, status=500, kind="write")
        self.assertEqual(an.writes_only_503_while_unavailable([w], [(5, 11)]), [w])

    def test_a_503_write_after_the_window_breaks_the_target(self):
        w = req(14, ok=False, status=503, kind="write")
        self.assertEqual(an.writes_only_503_while_unavailable([w], [(5, 11)]), [w])

    def test_only_requests_started_after_a_kill_count_against_fault_5(self):
        before, after = req(9.99, ok=False, status=0), req(10.5, ok=False, status=0)
        self.assertEqual(an.failures_not_in_flight([before, after], killed_at=10), [after])


class Slopes(unittest.TestCase):
    def test_slope_is_per_hour(self):
        pts = [(t, 100 + t / 60) for t in range(0, 600, 10)]   # +1 a minute
        self.assertAlmostEqual(an.slope_per_hour(pts), 60.0)

    def test_a_flat_series_is_flat(self):
        ok, slope, se, _ = an.flat([(t, 50.0) for t in range(0, 300, 10)], 0.25, 1.0)
        self.assertTrue(ok)
        self.assertEqual((slope, se), (0.0, 0.0))

    def test_growth_that_doubles_within_a_day_is_not_flat(self):
        pts = [(t, 100 + t * 100 / 86400) for t in range(0, 1800, 10)]
        self.assertFalse(an.flat(pts, 0.25, 1.0)[0])

    def test_noise_in_a_short_run_widens_the_margin_instead_of_failing(self):
        pts = [(t, 50.0 + (3 if (t // 10) % 2 else -3)) for t in range(0, 180, 10)]
        ok, slope, se, bound = an.flat(pts, 0.25, 1.0)
        self.assertGreater(abs(slope), bound)
        self.assertTrue(ok)


if __name__ == "__main__":
    unittest.main()
