import time, sys
from harness.task import TASKS
from harness.extraction import extract
from harness.grading import GradingPool
D="/work/shared/benchmarks"
if __name__ == "__main__":
    names = sys.argv[1:] or [n for n in TASKS.names() if not n.startswith("sandbox")]
    with GradingPool() as pool:
        for name in names:
            task = TASKS.get(name); data = task.load(D)
            t=time.time()
            golds_req = [(task.grader, p.golds, extract("\\boxed{%s}" % p.golds[0] if task.answer_format!="last_number" else "#### "+p.golds[0], task.answer_format)) for p in data.problems]
            v = pool.grade(golds_req)
            bad = [(p.id, p.golds, r[2]) for p, r, ok in zip(data.problems, golds_req, v) if not ok]
            sol = [p for p in data.problems if p.solution]
            sreq = [(task.grader, p.golds, extract(p.solution, task.answer_format)) for p in sol]
            sv = pool.grade(sreq)
            sbad = [(p.id, p.golds, r[2]) for p, r, ok in zip(sol, sreq, sv) if not ok]
            print(f"{name}: n={len(data.problems)} gold-ok={sum(v)}/{len(v)} sol-ok={sum(sv)}/{len(sv)} {time.time()-t:.1f}s", flush=True)
            for b in bad[:10]: print("  GOLD", b)
            for b in sbad[:15]: print("  SOL", b)
