import json,sys
for f in sys.argv[1:]:
    d=json.load(open(f))
    w=d['worst_burst_extra_per_swap']; fb=d['first_burst_extra_vs_same_burst']; st=d['staging']
    g=lambda x:{k:round(x[k],2) for k in ('median','p90','max','under_one') if k in x} if x else None
    print(f.split('/')[-1],'q',d['burst_ns_quiet']['p50'],'first',g(fb['swap']),'stageworst',g(st['worst_burst_extra']),'WORST',g(w['swap']),'ctl',g(w['control']),'nb',st['bursts'] and st['bursts']['median'])
