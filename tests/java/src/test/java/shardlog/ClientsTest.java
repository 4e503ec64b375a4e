package shardlog;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** kafka-clients with its defaults against shardlog's Kafka listener. */
class ClientsTest {
  static String bootstrap() {
    String b = System.getenv("SHARDLOG_KAFKA");
    if (b == null) {
      throw new IllegalStateException("SHARDLOG_KAFKA (the broker's Kafka address) is not set");
    }
    return b;
  }

  static Properties common() {
    Properties p = new Properties();
    p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
    return p;
  }

  @Test
  @Timeout(60)
  void producerWithItsDefaultsAndAClassicGroupConsumerRoundTrip() throws Exception {
    String topic = "java-" + UUID.randomUUID();
    try (Admin admin = Admin.create(common())) {
      admin.createTopics(List.of(new NewTopic(topic, 3, (short) 1))).all().get();
    }
    Properties pp = common();
    pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    int n = 1000;
    List<RecordMetadata> acks = new ArrayList<>();
    try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
      List<java.util.concurrent.Future<RecordMetadata>> fs = new ArrayList<>();
      for (int i = 0; i < n; i++) {
        fs.add(producer.send(new ProducerRecord<>(topic, "key-" + (i % 17), "value-" + i)));
      }
      for (var f : fs) {
        acks.add(f.get());
      }
    }
    assertEquals(n, acks.size());
    Properties cp = common();
    cp.put(ConsumerConfig.GROUP_ID_CONFIG, "g-" + topic);
    cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    cp.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
    List<ConsumerRecord<String, String>> got = new ArrayList<>();
    try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(cp)) {
      consumer.subscribe(List.of(topic));
      long deadline = System.currentTimeMillis() + 30_000;
      while (got.size() < n && System.currentTimeMillis() < deadline) {
        for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
          got.add(r);
        }
      }
      consumer.commitSync();
    }
    assertEquals(n, got.size());
    // Per key, values in the order sent.
    Map<String, Integer> last = new java.util.HashMap<>();
    for (ConsumerRecord<String, String> r : got) {
      int i = Integer.parseInt(r.value().substring("value-".length()));
      Integer prev = last.put(r.key(), i);
      assertTrue(prev == null || prev < i, r.key() + ": " + i + " after " + prev);
    }
  }

  /**
   * KIP-848: two consumers with group.protocol=consumer share a topic's
   * partitions through ConsumerGroupHeartbeat (the broker assigns), commit,
   * and a later member resumes from the commits; the Admin describes the
   * group as a consumer-protocol group with ConsumerGroupDescribe.
   */
  @Test
  @Timeout(90)
  void consumerProtocolGroupSharesPartitionsAndResumes() throws Exception {
    String topic = "kip848-" + UUID.randomUUID();
    String group = "g848-" + topic;
    try (Admin admin = Admin.create(common())) {
      admin.createTopics(List.of(new NewTopic(topic, 4, (short) 1))).all().get();
    }
    Properties pp = common();
    pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    Properties cp = common();
    cp.put(ConsumerConfig.GROUP_ID_CONFIG, group);
    cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    cp.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer");
    int n = 400;
    java.util.Set<String> seen = java.util.concurrent.ConcurrentHashMap.newKeySet();
    try (KafkaConsumer<String, String> a = new KafkaConsumer<>(cp);
        KafkaConsumer<String, String> b = new KafkaConsumer<>(cp)) {
      a.subscribe(List.of(topic));
      b.subscribe(List.of(topic));
      // The broker splits the four partitions: two each, settled before
      // any record exists (so no partition moves while it is being read).
      long deadline = System.currentTimeMillis() + 30_000;
      while ((a.assignment().size() != 2 || b.assignment().size() != 2)
          && System.currentTimeMillis() < deadline) {
        assertTrue(a.poll(Duration.ofMillis(100)).isEmpty());
        assertTrue(b.poll(Duration.ofMillis(100)).isEmpty());
      }
      assertEquals(2, a.assignment().size(), "a: " + a.assignment());
      assertEquals(2, b.assignment().size(), "b: " + b.assignment());
      try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
        for (int i = 0; i < n; i++) {
          producer.send(new ProducerRecord<>(topic, i % 4, "k" + i, "v" + i));
        }
        producer.flush();
      }
      // Together they read everything once.
      deadline = System.currentTimeMillis() + 30_000;
      while (seen.size() < n && System.currentTimeMillis() < deadline) {
        for (ConsumerRecord<String, String> r : a.poll(Duration.ofMillis(100))) {
          assertTrue(seen.add(r.value()), "read twice: " + r.value());
        }
        for (ConsumerRecord<String, String> r : b.poll(Duration.ofMillis(100))) {
          assertTrue(seen.add(r.value()), "read twice: " + r.value());
        }
      }
      assertEquals(n, seen.size());
      a.commitSync();
      b.commitSync();
      try (Admin admin = Admin.create(common())) {
        var d = admin.describeConsumerGroups(List.of(group)).all().get().get(group);
        assertEquals(org.apache.kafka.common.GroupType.CONSUMER, d.type(), d.toString());
        assertEquals(2, d.members().size(), d.toString());
      }
    }
    // Committed: a new member starts where they stopped (nothing more).
    try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
      producer.send(new ProducerRecord<>(topic, 0, "k", "after")).get();
    }
    try (KafkaConsumer<String, String> c = new KafkaConsumer<>(cp)) {
      c.subscribe(List.of(topic));
      List<String> later = new ArrayList<>();
      long deadline = System.currentTimeMillis() + 30_000;
      while (later.isEmpty() && System.currentTimeMillis() < deadline) {
        c.poll(Duration.ofMillis(200)).forEach(r -> later.add(r.value()));
      }
      // A little longer: anything left uncommitted would show up now.
      for (int i = 0; i < 5; i++) {
        c.poll(Duration.ofMillis(200)).forEach(r -> later.add(r.value()));
      }
      assertEquals(List.of("after"), later);
    }
  }
}
