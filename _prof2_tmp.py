import sys, time
sys.argv=["x"]
import importlib.util
spec=importlib.util.spec_from_file_location("pg","perf/grading.py"); pg=importlib.util.module_from_spec(spec); spec.loader.exec_module(pg)
from harness import grading
from harness.extraction import extract
from harness.task import TASKS
from math_verify import parser as mvp
task=TASKS.get("math500"); problems=task.load(pg.DEFAULT_DATA_DIR).problems
comps=pg.simulate([p.golds[0] for p in problems],64,0)
uniq=list(dict.fromkeys((p.golds, extract(c,"boxed")) for p,cs in zip(problems,comps) for c in cs))
uniq=[u for u in uniq if u[1] is not None][:800]
for rep in range(3):
    grading.clear_caches(); mvp.parse_latex_cached.cache_clear()
    t=time.time()
    for g,a in uniq: grading.grade("math",g,a)
    print("pass", rep, (time.time()-t)/len(uniq)*1000, "ms/unique")
# parse-only vs verify-only with warm caches
grading.clear_caches(); mvp.parse_latex_cached.cache_clear()
t=time.time()
for g,a in uniq: grading._parse_gold(g[0]); grading._parse_answer(a)
print("parse only", (time.time()-t)/len(uniq)*1000)
t=time.time()
for g,a in uniq: grading.grade("math",g,a)
print("verify only", (time.time()-t)/len(uniq)*1000)
