#!/usr/bin/env python3
"""Fills the expected annotations of deploy/prometheus/otphub-alerts.test.yaml
from what promtool renders, for alerts whose labels already match.

Run after editing an annotation in otphub-alerts.yaml, then review the diff:
the labels and timings of each test stay hand-written.
"""
import re, json, yaml, sys, subprocess
import os
os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'deploy', 'prometheus'))
path = 'otphub-alerts.test.yaml'
header = ''.join(l for l in open(path) if l.startswith('#'))
out = subprocess.run(['promtool', 'test', 'rules', path], capture_output=True, text=True); out = out.stdout + out.stderr
pair = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
def parse(s):
    return {k: json.loads('"' + v + '"') for k, v in pair.findall(s)}
got = {}
cur = None
lines = out.splitlines()
i = 0
blocks = re.split(r'\n    name: ', out)
for b in blocks[1:]:
    m = re.match(r'(.*?),\n    alertname: (\w+), time: (\S+), ', b)
    name, alert, t = m.group(1), m.group(2), m.group(3)
    g = b.split('got:[', 1)[1]
    labs = re.findall(r'Labels:\{(.*?)\}\n\s+Annotations:\{(.*)\}', g)
    got[(name, alert, t)] = [(parse(l), parse(a)) for l, a in labs]
doc = yaml.safe_load(open(path))
n = 0
for tc in doc['tests']:
    for art in tc['alert_rule_test']:
        key = (tc['name'], art['alertname'], art['eval_time'])
        if key not in got:
            continue
        for ea in art['exp_alerts']:
            want = dict(ea['exp_labels']); want['alertname'] = art['alertname']
            for l, a in got[key]:
                if l == want:
                    ea['exp_annotations'] = a
                    n += 1
print('filled', n, file=sys.stderr)
with open(path, 'w') as f:
    f.write(header)
    yaml.safe_dump(doc, f, sort_keys=False, width=1000, allow_unicode=True)
