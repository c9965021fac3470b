#!/usr/bin/env python3
"""Time from a DockerBuild file landing in a watched folder to its status saying the
Mesos task runs (phase Building, written on TASK_RUNNING), on a real Mesos master.

usage: bench-mesos-running.py MASTER_PORT REGISTRY SLIPWAY_BINARY  (scripts/bench.sh runs it)
"""
import os, subprocess, time, re, sys, statistics, json, urllib.request
port = int(sys.argv[1]); reg = sys.argv[2]; binary = sys.argv[3]
import tempfile
d = tempfile.mkdtemp(prefix="slipway-bench-mesos-")
w = subprocess.Popen([binary,"watch",d,"--backend","mesos","--mesos-master",f"127.0.0.1:{port}","--default-cpus","0.2","--default-mem","64","--concurrency","4"], stderr=subprocess.DEVNULL)
time.sleep(3)
times=[]
for i in range(10):
    name=f"m{i}"; f=f"{d}/{name}.yaml"
    t0=time.time()
    open(f,"w").write(f"""apiVersion: slipway.dev/v1alpha1
kind: DockerBuild
metadata: {{name: {name}, namespace: bench}}
spec:
  source: {{inline: {{dockerfile: "FROM scratch\\nLABEL n={i}\\n"}}}}
  output: {{registry: '{reg}', repository: bench/{name}}}
""")
    while True:
        t=open(f).read()
        if "phase: Building" in t or "phase: Pushing" in t or "phase: Succeeded" in t:
            times.append(time.time()-t0); break
        time.sleep(0.005)
    while "phase: Succeeded" not in open(f).read(): time.sleep(0.05)
w.terminate(); w.wait(); subprocess.run(["rm", "-rf", d])
print("file -> TASK_RUNNING written back (s): median %.3f min %.3f max %.3f" % (statistics.median(times), min(times), max(times)))
print(" ".join("%.3f"%t for t in times))
