"""Unit tests of the pure parts: duration scaling, config derivation, sink parsing.
Run: python3 -m unittest discover -s scripts/alert_check"""
from __future__ import annotations

import unittest
from pathlib import Path

import run
import scale
import watch

ROOT = Path(__file__).resolve().parents[2]


class Durations(unittest.TestCase):
    def test_parse_and_format_round_trip(self):
        self.assertEqual(scale.parse_ms("1h30m"), 5_400_000)
        self.assertEqual(scale.parse_ms("500ms"), 500)
        self.assertEqual(scale.format_ms(20_000), "20s")
        self.assertEqual(scale.format_ms(240_000), "4m")
        self.assertEqual(scale.format_ms(667), "667ms")

    def test_scale_divides_and_rounds_to_a_millisecond(self):
        self.assertEqual(scale.scale("5m", 15), "20s")
        self.assertEqual(scale.scale("10s", 15), "667ms")
        self.assertEqual(scale.scale("5m", 1), "5m")

    def test_rejects_what_is_not_a_duration(self):
        for bad in ("5", "m", "5x", "5m5h"):
            with self.assertRaises(ValueError):
                scale.parse_ms(bad)


class Rules(unittest.TestCase):
    def test_scales_for_ranges_subqueries_and_offsets_but_not_names(self):
        src = (
            "      - record: job:http_requests:rate5m\n"
            "        expr: sum(rate(x[5m])) / sum(rate(x[1h] offset 10m)) + max_over_time(y[30m:1m])\n"
            "        # a comment with [5m] stays\n"
            "        for: 5m\n"
        )
        log = scale.Scaled(15)
        out = scale.scale_rules_text(src, 15, "t.yml", log)
        self.assertIn("job:http_requests:rate5m", out)
        self.assertIn("x[20s]", out)
        self.assertIn("x[4m] offset 40s", out)
        self.assertIn("y[2m:4s]", out)
        self.assertIn("# a comment with [5m] stays", out)
        self.assertIn("for: 20s", out)
        self.assertEqual(len(log.changes), 6)

    def test_every_for_in_the_real_rules_is_scaled(self):
        log = scale.Scaled(15)
        text = (ROOT / "monitoring/rules/alerts.yml").read_text()
        out = scale.scale_rules_text(text, 15, "alerts.yml", log)
        self.assertEqual(text.count("for: "), out.count("for: "))
        self.assertNotRegex(out, r"for: 5m|\[5m\]")


class Alertmanager(unittest.TestCase):
    def test_urls_inline_and_timings_scaled(self):
        text = (ROOT / "monitoring/alertmanager.yml").read_text()
        files = scale.webhook_files(text)
        self.assertEqual(len(files), 2)
        urls = {f: f"http://sink/{f}" for f in files}
        out = scale.alertmanager_config(text, 15, urls, None, scale.Scaled(15))
        self.assertNotIn("webhook_url_file", out)
        for u in urls.values():
            self.assertIn(f"webhook_url: {u}", out)
        t = scale.am_timings(out)
        self.assertEqual(t["group_wait"], round(scale.parse_ms("10s") / 15))


class Sink(unittest.TestCase):
    def test_discord_titles_give_status_and_alert(self):
        line = {"received_at_ms": 1_000, "path": "/critical",
                "body": {"embeds": [{"title": "[FIRING:1] HighErrorRateCritical url-shortener (critical)"}]}}
        [d] = watch.parse_delivery(line)
        self.assertEqual((d.status, d.alert, d.path, d.t), ("FIRING", "HighErrorRateCritical", "/critical", 1.0))
        line["body"]["embeds"][0]["title"] = "[RESOLVED] HighLatency url-shortener"
        self.assertEqual(watch.parse_delivery(line)[0].status, "RESOLVED")

    def test_webhook_bodies_too(self):
        line = {"received_at_ms": 0, "path": "/warning",
                "body": {"alerts": [{"status": "resolved", "labels": {"alertname": "HighLatency"}}]}}
        self.assertEqual(watch.parse_delivery(line)[0].status, "RESOLVED")

    def test_prometheus_times_with_nanoseconds(self):
        self.assertAlmostEqual(watch.parse_rfc3339("1970-01-01T00:00:01.123456789Z"), 1.123456, places=5)


class Metrics(unittest.TestCase):
    def test_names_read_by_an_expression(self):
        q = ('(sum(job:http_requests:rate5m) or on () vector(0)) == 0 '
             'and on () sum(up{job="url-shortener"}) > 0')
        self.assertEqual(run.metric_names(q), {"job:http_requests:rate5m", "up"})
        self.assertEqual(run.metric_names('rate(process_cpu_seconds_total{job="a"}[4s]) > 1.6'),
                         {"process_cpu_seconds_total"})


if __name__ == "__main__":
    unittest.main()
