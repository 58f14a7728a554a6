# The real pool against the simulated one over the same scaled trace (validation runs).
# Data: results/valpool_TAG_{real,sim}.dat: t workers
set terminal pngcairo size 1100,500 font "DejaVu Sans,10"
set output OUTDIR."/validation_pool.png"
set multiplot layout words(VALS),1 title "Validation: workers over time, real synapse up against bench sim (scaled Azure code trace, CC-BY-4.0)"
set grid
set ylabel "workers"
set yrange [0:2.5]
set key top right
do for [i=1:words(VALS)] {
    set title word(VALS, i)
    if (i == words(VALS)) { set xlabel "seconds" } else { unset xlabel }
    plot RES."/valpool_".word(VALS, i)."_real.dat" using 1:2 with steps lw 2 title "real", \
         RES."/valpool_".word(VALS, i)."_sim.dat" using 1:2 with steps lw 2 dt 2 title "simulated"
}
unset multiplot
