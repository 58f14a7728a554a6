# Pool size over time against arrivals (simulated, code trace at real speed), for a few policies.
# Data: results/pool_TAG.dat: minute arrivals_per_s workers (10 s bins)
set terminal pngcairo size 1100,650 font "DejaVu Sans,10"
set output OUTDIR."/pool_vs_arrivals.png"
set multiplot layout words(POOLS),1 title "Workers (alive + starting, max over 10 s) against arrivals: Azure code trace (CC-BY-4.0), simulated"
set grid
set ytics nomirror
set y2tics
set ylabel "workers"
set y2label "arrivals/s"
set yrange [0:4.5]
set key top right
do for [i=1:words(POOLS)] {
    set title word(POOL_TITLES, i)
    if (i == words(POOLS)) { set xlabel "minutes" } else { unset xlabel }
    plot RES."/pool_".word(POOLS, i).".dat" using 1:2 axes x1y2 with boxes fs solid 0.3 lc rgb "#88aadd" title "arrivals/s", \
         RES."/pool_".word(POOLS, i).".dat" using 1:3 with steps lw 2 lc rgb "#cc3300" title "workers"
}
unset multiplot
