import json, time
from harness.grading import GradingPool, _parse_gold
if __name__ == "__main__":
    rs=[json.loads(l) for l in open("/work/shared/benchmarks/minerva_math.jsonl")]
    reqs=[]; meta=[]
    for r in rs:
        for a in dict.fromkeys(r["answer_alternatives"]):
            if a.strip()!=r["answer"].strip():
                reqs.append(("math",(r["answer"],),a)); meta.append((r["id"],r["answer"],a))
    t=time.time()
    with GradingPool() as pool:
        v=pool.grade(reqs); print(time.time()-t, pool.stats)
    bad={}
    for m,ok in zip(meta,v):
        if not ok: bad.setdefault(m[0],[]).append(m)
    for k,ms in bad.items():
        print(k, ms, "primary parse:", _parse_gold(ms[0][1])[:1])
