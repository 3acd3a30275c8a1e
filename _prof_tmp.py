import sys, time, cProfile, pstats
sys.argv=["x"]
sys.path.insert(0,"perf")
import importlib.util
spec=importlib.util.spec_from_file_location("pg","perf/grading.py"); pg=importlib.util.module_from_spec(spec); spec.loader.exec_module(pg)
from harness import grading
from harness.extraction import extract
from harness.task import TASKS
task=TASKS.get("math500"); problems=task.load(pg.DEFAULT_DATA_DIR).problems
comps=pg.simulate([p.golds[0] for p in problems],64,0)
uniq=list(dict.fromkeys((p.golds, extract(c,"boxed")) for p,cs in zip(problems,comps) for c in cs))
uniq=[u for u in uniq if u[1] is not None]
print(len(uniq))
grading.grade("math",("1",),"1")
t=time.time(); times=[]
for g,a in uniq[:600]:
    s=time.perf_counter(); grading.grade("math",g,a); times.append((time.perf_counter()-s,g,a))
print("per unique", (time.time()-t)/600)
times.sort(reverse=True)
print(sum(x[0] for x in times[:20]), [ (round(x[0],2),x[1][0][:40],x[2][:40]) for x in times[:12]])
grading.clear_caches()
import cProfile, pstats
pr=cProfile.Profile(); pr.enable()
for g,a in uniq[600:1200]: grading.grade("math",g,a)
pr.disable()
st=pstats.Stats(pr); st.sort_stats("cumulative").print_stats(25)
