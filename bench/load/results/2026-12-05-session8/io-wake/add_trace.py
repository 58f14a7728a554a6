def tr(tag_expr):
    return '{ struct timespec _ts; clock_gettime(CLOCK_REALTIME, &_ts); fprintf(stderr, "TRACE %ld.%06ld ' + tag_expr + '\\n", (long)_ts.tv_sec, _ts.tv_nsec / 1000'
p='src/worker/worker.c'; s=open(p).read()
old='''        while ((ran = step(&s)) < 0) { /* a preemption rebuilt the step */
        }
        publish(&s, !draining);'''
new='''        while ((ran = step(&s)) < 0) { /* a preemption rebuilt the step */
        }
        ''' + tr('step_end') + '''); }
        publish(&s, !draining);
        ''' + tr('published') + '''); }'''
assert old in s; s=s.replace(old,new,1); open(p,'w').write(s)
p='src/worker/wio.c'; s=open(p).read()
old='''        struct out_msg *list = w->out_head;
        w->out_head = w->out_tail = NULL;'''
new='''        ''' + tr('io_woke') + '''); }
        struct out_msg *list = w->out_head;
        w->out_head = w->out_tail = NULL;'''
assert old in s; s=s.replace(old,new,1)
open(p,'w').write(s)
