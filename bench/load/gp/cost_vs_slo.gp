# Cost against SLO attainment across autoscaling policies (simulated over the Azure traces).
# Data: results/cost_TRACE_coldC.dat: policy attainment_pct cost_per_mtok (one row per policy)
set terminal pngcairo size 1100,500 font "DejaVu Sans,10"
set output OUTDIR."/cost_vs_slo.png"
set multiplot layout 1,2 title "Cost against SLO attainment (TTFT <= 200 ms, TPOT <= 50 ms) by policy; Azure LLM traces 2023 (CC-BY-4.0)"
set grid
set key bottom left
set xlabel "SLO attainment (%)"
set ylabel "$ per million tokens"
do for [tr in "code conv"] {
    set title tr." trace, lengths x0.1"
    plot for [c in COLDS] RES."/cost_".tr."_cold".c.".dat" using 2:3 with points pt 7 ps 1.3 title "cold start ".c, \
         for [c in COLDS] RES."/cost_".tr."_cold".c.".dat" using 2:3:1 with labels offset 0.6,0.6 left font ",8" notitle
}
unset multiplot
