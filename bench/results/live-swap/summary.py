# Summarises live-swap / dpdk-swap JSON results: python3 summary.py *.json
import json,sys
for f in sys.argv[1:]:
    v=json.load(open(f))
    print(f, 'mpps %.2f p50 %d full %.2f trains %.3f' % (v['mpps'], v['burst_ns_p50'], v['full_burst_share'], v['train_start_share']))
    for k in ['first_burst_extra_vs_bursts_before','first_burst_judge_extra_in_bursts','worst_of_first_8_bursts_extra_vs_bursts_before']:
        if v[k]['swap'] is None: continue
        s=v[k]['swap']; c=v[k]['control']
        print('  %-50s swap med %.2f p90 %.2f max %.2f under1 %.2f | ctrl med %.2f p90 %.2f max %.2f under1 %.2f' % (k, s['median'], s['p90'], s['max'], s['under_one'], c['median'], c['p90'], c['max'], c['under_one']))
    for k in ['first_burst_extra_ns','first_burst_judge_extra_ns']:
        if v[k]['swap'] is None: continue
        print('  %-50s swap med %.0f p90 %.0f | ctrl med %.0f p90 %.0f' % (k, v[k]['swap']['median'], v[k]['swap']['p90'], v[k]['control']['median'], v[k]['control']['p90']))
