package shardlog;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.ProducerState;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.InvalidConfigurationException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** The Java Admin client against shardlog. */
class AdminTest {
  static Admin admin() {
    Properties p = new Properties();
    p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, ClientsTest.bootstrap());
    return Admin.create(p);
  }

  @Test
  @Timeout(60)
  void createDescribeConfigsAndListOffsets() throws Exception {
    String topic = "admin-" + UUID.randomUUID();
    try (Admin admin = admin()) {
      admin
          .createTopics(
              List.of(
                  new NewTopic(topic, 4, (short) 1)
                      .configs(Map.of("cleanup.policy", "compact", "segment.bytes", "1048576"))))
          .all()
          .get();
      ExecutionException again =
          org.junit.jupiter.api.Assertions.assertThrows(
              ExecutionException.class,
              () -> admin.createTopics(List.of(new NewTopic(topic, 4, (short) 1))).all().get());
      assertTrue(again.getCause() instanceof TopicExistsException, again.toString());

      DescribeClusterResult cluster = admin.describeCluster();
      assertTrue(cluster.nodes().get().size() >= 1);
      assertTrue(cluster.controller().get() != null);

      TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
      assertEquals(4, d.partitions().size());
      // Topic ids (Metadata v10+): a real one, the same on every call.
      assertTrue(!d.topicId().equals(org.apache.kafka.common.Uuid.ZERO_UUID), d.toString());
      assertEquals(
          d.topicId(),
          admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic).topicId());
      d.partitions().forEach(p -> assertTrue(p.leader() != null, "leader of " + p));

      ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
      Config c = admin.describeConfigs(List.of(res)).all().get().get(res);
      assertEquals("compact", c.get("cleanup.policy").value());
      assertEquals("1048576", c.get("segment.bytes").value());

      Properties pp = new Properties();
      pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, ClientsTest.bootstrap());
      pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
      pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
      try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
        for (int i = 0; i < 10; i++) {
          long ts = 1_700_000_000_000L + i;
          producer.send(new ProducerRecord<>(topic, 2, ts, "k" + i, "v" + i)).get();
        }
      }
      TopicPartition tp = new TopicPartition(topic, 2);
      ListOffsetsResult.ListOffsetsResultInfo latest =
          admin.listOffsets(Map.of(tp, OffsetSpec.latest())).all().get().get(tp);
      ListOffsetsResult.ListOffsetsResultInfo earliest =
          admin.listOffsets(Map.of(tp, OffsetSpec.earliest())).all().get().get(tp);
      assertEquals(10, latest.offset());
      assertEquals(0, earliest.offset());

      // DescribeProducers: the producer above (idempotent by default), its
      // last sequence and its last batch's timestamp.
      List<ProducerState> active =
          admin.describeProducers(List.of(tp)).partitionResult(tp).get().activeProducers();
      assertEquals(1, active.size(), active.toString());
      assertEquals(9, active.get(0).lastSequence());
      assertEquals(1_700_000_000_009L, active.get(0).lastTimestamp());
      assertTrue(active.get(0).currentTransactionStartOffset().isEmpty(), active.toString());

      // CreatePartitions: 4 -> 6, seen by describeTopics.
      admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(6))).all().get();
      assertEquals(
          6, admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic).partitions().size());

      // DeleteRecords (Kafka Streams purges its repartition topics so).
      long low =
          admin
              .deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(4)))
              .lowWatermarks()
              .get(tp)
              .get()
              .lowWatermark();
      assertEquals(4L, low);
      assertEquals(
          4, admin.listOffsets(Map.of(tp, OffsetSpec.earliest())).all().get().get(tp).offset());
      // The max timestamp (ListOffsets v7+): the last record, sent last.
      assertEquals(
          9, admin.listOffsets(Map.of(tp, OffsetSpec.maxTimestamp())).all().get().get(tp).offset());

      // incrementalAlterConfigs: set, append to a list, delete (back to the
      // broker default), all applied live; a bad value fails the resource.
      admin
          .incrementalAlterConfigs(
              Map.of(
                  res,
                  List.of(
                      new AlterConfigOp(
                          new ConfigEntry("retention.ms", "3600000"), AlterConfigOp.OpType.SET),
                      new AlterConfigOp(
                          new ConfigEntry("cleanup.policy", "delete"),
                          AlterConfigOp.OpType.APPEND),
                      new AlterConfigOp(
                          new ConfigEntry("segment.bytes", null), AlterConfigOp.OpType.DELETE))))
          .all()
          .get();
      Config after = admin.describeConfigs(List.of(res)).all().get().get(res);
      assertEquals("3600000", after.get("retention.ms").value());
      assertEquals("compact,delete", after.get("cleanup.policy").value());
      assertEquals(
          ConfigEntry.ConfigSource.DEFAULT_CONFIG, after.get("segment.bytes").source());
      ExecutionException bad =
          org.junit.jupiter.api.Assertions.assertThrows(
              ExecutionException.class,
              () ->
                  admin
                      .incrementalAlterConfigs(
                          Map.of(
                              res,
                              List.of(
                                  new AlterConfigOp(
                                      new ConfigEntry("retention.ms", "soon"),
                                      AlterConfigOp.OpType.SET))))
                      .all()
                      .get());
      assertTrue(bad.getCause() instanceof InvalidConfigurationException, bad.toString());
    }
  }
}
