# Throughput, goodput and p99 latencies against the offered Poisson rate, batching on and off.
# Data: results/rate_seqs{16,1}.dat: rate rps goodput ttft_p99_ms tpot_p99_ms tok_per_s
set terminal pngcairo size 1100,450 font "DejaVu Sans,10"
set output OUTDIR."/throughput_vs_rate.png"
set multiplot layout 1,2 title "Throughput and latency against offered rate (stories15m F16, 64 in / 64 out, 1 worker)"
set grid
set key top left
set xlabel "offered rate (requests/s)"
set ylabel "requests/s"
plot RES."/rate_seqs16.dat" using 1:2 with linespoints lw 2 pt 7 title "throughput, batching on (16 seqs)", \
     RES."/rate_seqs16.dat" using 1:3 with linespoints lw 2 pt 5 title "goodput, batching on", \
     RES."/rate_seqs1.dat" using 1:2 with linespoints lw 2 pt 6 title "throughput, batching off (1 seq)", \
     RES."/rate_seqs1.dat" using 1:3 with linespoints lw 2 pt 4 title "goodput, batching off", \
     x with lines dt 3 lc rgb "#aaaaaa" title "offered"
set logscale y
set ylabel "p99 latency (ms, log scale)"
set key top left
plot RES."/rate_seqs16.dat" using 1:4 with linespoints lw 2 pt 7 title "TTFT p99, on", \
     RES."/rate_seqs16.dat" using 1:5 with linespoints lw 2 pt 5 title "TPOT p99, on", \
     RES."/rate_seqs1.dat" using 1:4 with linespoints lw 2 pt 6 title "TTFT p99, off", \
     RES."/rate_seqs1.dat" using 1:5 with linespoints lw 2 pt 4 title "TPOT p99, off", \
     200 with lines dt 2 lc rgb "#cc0000" title "TTFT SLO 200 ms", \
     50 with lines dt 2 lc rgb "#0000cc" title "TPOT SLO 50 ms"
unset multiplot
