#!/usr/bin/env node
// Writes prometheusrule.yaml from deploy/prometheus/rules.yml, so the alert rules have one source.
// `npm test` fails when the two differ: run `node deploy/kubernetes/rules/sync.mjs` after editing rules.yml.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';

const here = path.dirname(fileURLToPath(import.meta.url));
export const RULES = path.join(here, '../../prometheus/rules.yml');
export const TARGET = path.join(here, 'prometheusrule.yaml');

export function render() {
  const { groups } = parse(fs.readFileSync(RULES, 'utf8'));
  const doc = {
    apiVersion: 'monitoring.coreos.com/v1',
    kind: 'PrometheusRule',
    metadata: { name: 'fleetprobe', labels: { 'app.kubernetes.io/name': 'fleetprobe', role: 'alert-rules' } },
    spec: { groups },
  };
  return `# Generated from deploy/prometheus/rules.yml by sync.mjs in this folder: edit rules.yml, then run it.\n${stringify(doc, { lineWidth: 0 })}`;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) fs.writeFileSync(TARGET, render());
