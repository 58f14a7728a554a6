import glob, sys
W=[l.split() for l in open(glob.glob(sys.argv[1]+'/*.log')[0]) if l.startswith('TRACE')]
ev=[(float(x[1]),x[2]) for x in W]
lat=[]
for i,(t,k) in enumerate(ev):
    if k=='published':
        for t2,k2 in ev[i+1:i+40]:
            if k2=='io_woke': lat.append((t2-t)*1e3); break
lat.sort(); n=len(lat); print(n, 'publish->I/O thread awake: p10 %.2f p50 %.2f p90 %.2f p99 %.2f max %.2f ms'%(lat[n//10],lat[n//2],lat[9*n//10],lat[99*n//100],lat[-1]))
