# TTFT and TPOT distributions, batching on (--max-seqs 16) against off (--max-seqs 1), at two
# Poisson rates. Data: results/cdf_*.dat (value_ms, fraction), made by charts.sh.
set terminal pngcairo size 1100,450 font "DejaVu Sans,10"
set output OUTDIR."/latency_cdf.png"
set multiplot layout 1,2 title "Latency CDFs: stories15m F16, 64-token prompts, 64 output tokens, Poisson (1 worker, 2 threads)"
set logscale x
set grid
set key bottom right
set ylabel "fraction of requests"
set yrange [0:1]
set xlabel "TTFT (ms, log scale)"
set arrow 1 from 200, graph 0 to 200, graph 1 nohead dt 2 lc rgb "#888888"
plot for [i=1:words(CDFS)] RES."/cdf_ttft_".word(CDFS, i).".dat" using 1:2 with lines lw 2 title word(TITLES, i)
unset arrow 1
set xlabel "TPOT (ms, log scale)"
set arrow 2 from 50, graph 0 to 50, graph 1 nohead dt 2 lc rgb "#888888"
plot for [i=1:words(CDFS)] RES."/cdf_tpot_".word(CDFS, i).".dat" using 1:2 with lines lw 2 title word(TITLES, i)
unset multiplot
