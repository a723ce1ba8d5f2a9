"""providers: publish the Snapshot's static view to external DNS services.

One sync loop (``syncer``) drives every backend (``etcd``, ``route53``,
``clouddns``) through the same steps: read current records, plan a minimal
diff (``plan``), refuse unsafe plans, apply, re-read.  Ownership is tracked
per record set (``ownership``) so foreign records are never touched.
"""
